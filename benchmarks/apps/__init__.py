"""eokafka apps the benchmarks run with ``eokafka run benchmarks.apps.<name>:app``."""
