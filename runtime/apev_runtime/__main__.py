from apev_runtime.cli import main

main()
