"""The tests of archive-node, by kind: unit/, node/, process/ and interop/; helpers/ shared."""
