"""Domain services over a SQLAlchemy session: characters, styles, library, datasets, jobs. No FastAPI here."""
