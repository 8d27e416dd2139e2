from apev_stack.cli import main

main()
