"""Demo data written for this project: K12 teaching records in every supported raw shape,
plus deliberately bad records that the cleaner must catch."""
