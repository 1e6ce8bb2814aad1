"""Every Redis key template ackflow uses, in one place.

The Lua scripts build the few names they need (a run's timers hash, a flow-and-status index,
a timer's index member) with functions rendered from the ones below at load
(runner/store/lua), so a template changed here changes them too.

All keys of one run share the hash tag ``{<run id>}`` so that a commit touching them is one
atomic script on one Redis node (and one slot in a cluster). The global indexes are the only
keys outside a run's tag.

Per run (``<prefix>:{<run>}:<part>``):
  meta     hash   status, flow, version, created_ms, updated_ms, result, error, digest
  spec     hash   task name -> msgpack task spec (immutable once the run exists)
  tasks    hash   task name -> msgpack task state (absent = PENDING)
  data     hash   value name -> msgpack value (run inputs and task outputs)
  joins    hash   "<task>" -> number of predecessors decided; "<task>\\x1eno" -> of which not
                  taken. Each predecessor counts once: its completion is one event, applied
                  once (applied), later ones for the attempt refused (stale), and the count
                  is guarded (engines racing on one join: one commit conflicts, decides again)
  applied  hash   event id -> newline-separated ids of the outbox messages it caused
  outbox   hash   message id -> msgpack [routing key, body]; deleted once confirmed
  history  list   msgpack entries, one per applied event
  deliveries hash event id -> times an engine began processing a redelivered copy (poison count)
  timers   hash   timer id -> msgpack [due ms, encoded timer.fired event]
  leases   hash   "<task>" -> "<attempt>:<until ms>" (lease of a long task, renewed by its worker);
                  "<task>\x1fp" -> msgpack progress {"a", "f", "m", "t"} (decide.records.TaskProgress)
Global:
  <prefix>:runs             zset   run id by creation time (ms)
  <prefix>:status:<STATUS>  zset   run id by creation time, one zset per run status
  <prefix>:timers           zset   "<run>\x1f<timer id>" by due time (ms): engines fire due ones
  <prefix>:flow:<FLOW>      zset   run id by creation time, one zset per flow name (dashboard filter)
  <prefix>:flow:<FLOW>:<STATUS>  zset  the same per flow and status
  <prefix>:epoch            string the deployment epoch (SET NX once, never expires): when it
                                   vanishes or changes, Redis lost its data (runner.engine.durability)
  <prefix>:lost             zset   run id by the time its loss was noticed: runs whose state
                                   vanished while active, kept for the retention time
  <prefix>:workers          hash   worker id -> its latest heartbeat record (runner.presence)
  <prefix>:workers:heard    zset   worker id by the time it was last heard (ms)
  <prefix>:registry         hash   flow name -> packed info of its latest version (runner.client.flows)
  <prefix>:registry:<FLOW>  hash   digest -> packed compiled spec, each version of the flow
  <prefix>:catalogue        hash   task name -> packed info of its latest catalogue entry
                                   (runner.client.catalogue), the entry included
  <prefix>:catalogue:<TASK> hash   digest -> packed catalogue entry, each version of the task
  <prefix>:schedules        hash   schedule name -> msgpack record (runner.schedule.model); its
                                   next firing is a timer of the pseudo run "~schedule:<name>"
  <prefix>:queues           zset   task queue by the time a submitted run last used it (ms)
                                   (the three: runner/store/redis_fleet.py)
Channel: ``<prefix>:{<run>}:notify`` announces each commit to waiters.

On a Redis Cluster (runner/store/redis_cluster.py) a script may touch only keys of one slot,
so the global structures are laid out differently (`index_root`, `timer_bucket_keys`):
  {<prefix>}:runs, {<prefix>}:status:<STATUS>, {<prefix>}:flow:<FLOW>[:<STATUS>]
                            the indexes above, all in one slot (the hash tag {<prefix>})
  {<prefix>}:ix             hash   run id -> number of its last status change indexed
  {<prefix>}:workers, {<prefix>}:workers:heard, {<prefix>}:queues   the fleet's keys above
  {<prefix>}:registry[:<FLOW>], {<prefix>}:catalogue[:<TASK>]   the registry and catalogue above
  <prefix>:timers:{<prefix>:t<k>}  zset  "<run>\x1f<timer id>" by due time, k = crc32(run) mod
                                         TIMER_BUCKETS: the timers, sharded over the cluster
  <prefix>:timerp:{<prefix>:t<k>}  hash  the same member -> msgpack [due ms, timer.fired event]
"""

from __future__ import annotations

import re
import zlib

from runner.errors import AckflowError

META = "meta"
SPEC = "spec"
TASKS = "tasks"
DATA = "data"
JOINS = "joins"
APPLIED = "applied"
OUTBOX = "outbox"
HISTORY = "history"
DELIVERIES = "deliveries"
TIMERS = "timers"
LEASES = "leases"
RUN_HASHES = (META, SPEC, TASKS, DATA, JOINS, APPLIED, OUTBOX)
RUN_PARTS = (*RUN_HASHES, HISTORY, DELIVERIES, TIMERS, LEASES)

JOIN_SEP = "\x1f"

_RUN_ID_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")


class InvalidRunId(AckflowError):
    """A run id with characters that could break key layout (only [A-Za-z0-9_.:-])."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run id {run_id!r} must be 1-128 characters of letters, digits, '_', '.', ':', '-'")


def check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not _RUN_ID_RE.match(run_id):
        raise InvalidRunId(str(run_id))
    return run_id


def run_key(prefix: str, run_id: str, part: str) -> str:
    return f"{prefix}:{{{run_id}}}:{part}"


def notify_channel(prefix: str, run_id: str) -> str:
    return f"{prefix}:{{{run_id}}}:notify"


def runs_index(prefix: str) -> str:
    return f"{prefix}:runs"


def status_index(prefix: str, status: str) -> str:
    return f"{prefix}:status:{status}"


def flow_index(prefix: str, flow: str) -> str:
    return f"{prefix}:flow:{flow}"


def flow_status_index(prefix: str, flow: str, status: str) -> str:
    return f"{prefix}:flow:{flow}:{status}"


def epoch_key(prefix: str) -> str:
    return f"{prefix}:epoch"


def lost_index(prefix: str) -> str:
    return f"{prefix}:lost"


def timers_index(prefix: str) -> str:
    return f"{prefix}:timers"


# Timer buckets on a Redis Cluster. Fixed: a deployment that changed it would strand the
# timers of the buckets it no longer reads.
TIMER_BUCKETS = 16


def index_root(prefix: str, cluster: bool) -> str:
    """What the global index names start with: the prefix, or on a cluster the prefix as a
    hash tag, so that every index is in one slot and one script can keep them together."""
    return f"{{{prefix}}}" if cluster else prefix


def flows_index(root: str) -> str:
    """The registered flows (`runner.client.flows`): name -> its latest version's info."""
    return f"{root}:registry"


def flow_versions(root: str, name: str) -> str:
    """One registered flow's versions: digest -> packed spec (not ``flow:<name>``: that is
    the flow's run index)."""
    return f"{root}:registry:{name}"


def catalogue_index(root: str) -> str:
    """The task catalogue (`runner.client.catalogue`): task name -> its latest entry's info."""
    return f"{root}:catalogue"


def catalogue_versions(root: str, name: str) -> str:
    """One task's catalogue entries: digest -> packed entry."""
    return f"{root}:catalogue:{name}"


def schedules_index(root: str) -> str:
    """The schedules (`runner.schedule`): name -> packed record (definition and state)."""
    return f"{root}:schedules"


# A schedule's next firing is a timer of a pseudo run that no run id can be (``~`` is not
# allowed in one): its timer id is the firing time (ms), its payload carries no event.
SCHEDULE_TIMER_RUN = "~schedule:"


def schedule_timer_run(name: str) -> str:
    return f"{SCHEDULE_TIMER_RUN}{name}"


def schedule_of_timer(run_id: str) -> str | None:
    """The schedule a timer belongs to, or None for a run's timer."""
    return run_id[len(SCHEDULE_TIMER_RUN) :] if run_id.startswith(SCHEDULE_TIMER_RUN) else None


def index_numbers(root: str) -> str:
    return f"{root}:ix"


def timer_bucket(run_id: str) -> int:
    return zlib.crc32(run_id.encode()) % TIMER_BUCKETS


def timer_bucket_keys(prefix: str, bucket: int) -> tuple[str, str]:
    """The zset (members by due time) and the payload hash of one timer bucket: one slot."""
    tag = f"{{{prefix}:t{bucket}}}"
    return f"{prefix}:timers:{tag}", f"{prefix}:timerp:{tag}"


def timer_member(run_id: str, timer_id: str) -> str:
    return f"{run_id}{JOIN_SEP}{timer_id}"


def split_timer_member(member: str) -> tuple[str, str]:
    run_id, _, timer_id = member.partition(JOIN_SEP)
    return run_id, timer_id


_ITEM_RE = re.compile(r"^(?P<base>[^\[]+)\[(?P<i>\d+)\]$")


def item_name(node: str, index: int) -> str:
    """The task name of one element of a map node (task names never contain '[')."""
    return f"{node}[{index}]"


def item_of(name: str) -> tuple[str, int] | None:
    """(map node, index) for an element's name; None for any other task."""
    if not name.endswith("]"):  # the usual case, on every decision's hot path
        return None
    m = _ITEM_RE.match(name)
    return None if m is None else (m["base"], int(m["i"]))


def progress_field(task: str) -> str:
    return f"{task}{JOIN_SEP}p"
