"""Where images come from: folders, list files and tar shards, their headers, and the
image table."""
