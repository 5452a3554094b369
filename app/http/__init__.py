"""What a request is made of and answered with: the bearer check, parsing, replies, downloads, errors as JSON."""
