from n2n_raw.cli import main

main()
