from proteus.app import main

main()
