from k12tune.demo.run import main

raise SystemExit(main())
