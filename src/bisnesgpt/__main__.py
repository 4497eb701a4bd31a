from bisnesgpt.cli.main import main

main()
