"""Readers and writers: Allen grid zips, ABA grid folders, npz stacks, AnnData, NRRD."""
