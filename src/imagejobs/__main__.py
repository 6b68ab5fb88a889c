from imagejobs.cli import main

main()
