from datasets.cli import main
from datasets.cli_exit import run_main

run_main(main)
