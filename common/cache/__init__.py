"""The cache format shared by the extract (writer) and train (reader) stages."""
