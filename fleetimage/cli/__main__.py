from fleetimage.cli.app import main

main()
