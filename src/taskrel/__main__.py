import sys

if sys.argv[1:2] == ["gmrf"]:  # light path: the gmrf commands check their arguments before heavy imports
    from taskrel.decentral.cli import main
else:
    from taskrel.cli import main

sys.exit(main())
