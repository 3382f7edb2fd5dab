"""Writing a trial file: `msfeas trial check` (design and data checks), `show`, `import` (a
ClinicalTrials.gov record to a trial file to finish) and `schema` (the JSON Schema of trial files)."""
