"""spdbench: train, sample and score image-corruption diffusion processes under one protocol."""
