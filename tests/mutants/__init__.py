"""`make mutants`: a curated table of mutations of the core (`table`) and the runner that
applies each one alone to a copy of the tree and runs the fast suites against it (`run`)."""
