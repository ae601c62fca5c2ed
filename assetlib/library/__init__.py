"""What an asset is and where its files are."""
