from eokafka.cli import main

main()
