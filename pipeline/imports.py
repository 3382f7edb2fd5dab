"""Importing pandera without pyspark's pandas layer.

With pyspark installed (the Spark engine), importing pandera also imports
`pyspark.pandas` (pandera's `external_config` probes for it), which costs a third of
a second or more and warns that pandas 3 is not fully supported, on stderr, in every
validating run of every engine. msfeas never uses pandera on pyspark.pandas, so the
module is hidden while pandera is imported, and only then: the Spark engine and GE
import pyspark normally afterwards.
"""

from __future__ import annotations

import contextlib
import sys


@contextlib.contextmanager
def without_pyspark_pandas():
    hidden = "pyspark.pandas" not in sys.modules
    if hidden:
        sys.modules["pyspark.pandas"] = None  # an import of it raises ImportError, which pandera expects
    try:
        yield
    finally:
        if hidden and sys.modules.get("pyspark.pandas", 0) is None:
            del sys.modules["pyspark.pandas"]
