"""Curation of a library: quality flags, duplicate clusters, caption-audio agreement and dataset export."""
