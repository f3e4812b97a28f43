from tens_control.cli import main

raise SystemExit(main())
