"""Studies (issue 17): variants trained with one recipe, sampled and scored alike, ranked honestly.

`spec` (what a study is, its presets; torch-free), `results` and `ranking` (what came out, which
differences are real; torch-free), `report` (HTML, Markdown zip, CSV), `figures` (its PNGs),
`local` (a whole study in one process), `client` (the same through the service), `cli` (`ddpm study`).
"""
