"""The Spark engine: the export read, validated and judged inside Spark (`--engine spark`)."""
