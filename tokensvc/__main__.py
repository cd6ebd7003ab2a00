from tokensvc.cli import main

main()
