from meshgate_cli.main import main

raise SystemExit(main())
