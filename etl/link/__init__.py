"""Linkage across sources: which source patients are one person.

Exact on the EUPID where both records carry one (harmonise already gives them the same id; two
different EUPIDs are never one person); otherwise probabilistic record linkage with Splink on the
quasi-identifiers harmonise keeps: sex, birth date (as keyed tokens, at the precision the source
gives), country, centre, diagnosis date and ICD-O-3 morphology and topography. Reviewers' decisions
(rtw link / rtw unlink, meta.link_decision) then add or remove links, and the connected components
are the persons. Modules: `model` (the configuration and the Splink settings), `cluster` (the
persons from the edges, a pure function), `run` (the step publish runs), `decision` (rtw link).
"""
