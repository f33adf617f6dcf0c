from runnerscale.cli import main

main()
