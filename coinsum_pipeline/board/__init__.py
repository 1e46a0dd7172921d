"""The board: the traders' read-only page over the readers' snapshot (the curve of the basket
sum, a slot's coins, the day table, the CSVs), and its JSON API. The Dagster UI stays the
pipeline's monitor; the board links to it for each slot and day."""
