from vlm_monitor.cli import main

raise SystemExit(main())
