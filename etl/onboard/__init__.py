"""Onboarding a new source: look at its files before any mapping exists, draft a mapping, check it.

- `reading`: a file (any registered format) -> its record sets, staged through the format's own
  adapter into a private temporary folder, plus what the format itself declares about its columns
  (CSV dialect, SAS labels and formats, SPSS and Stata value labels, ODM ItemDefs and CodeLists).
- `profile`: per record set and column, the inferred type, null rate, distinct count and top values;
  values seen fewer than `MIN_SHOWN` times are never shown (exports hold identifiers).
- `check`: a mapping against a source's current landing files, without publishing anything.
- `scaffold`: a draft mapping from a file, with TODOs for what only a person can decide.
- `yaml_lines`: where a key path sits in a YAML file, so errors point at a line.
- `pages`: the terminal tables and the offline HTML profile page.

The functions here return dataclasses; reading files and printing stay at the edges (`reading`,
`pages`, the `rtw` commands).
"""
