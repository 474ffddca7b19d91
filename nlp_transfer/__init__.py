"""nlp_transfer."""
