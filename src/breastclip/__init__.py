"""breastclip: breast lesion classification with frozen vision-language embeddings.

For research use only. Not a medical device and not for diagnosis.
"""

__version__ = "0.1.0"

RESEARCH_ONLY = "For research use only. Not for clinical diagnosis or patient management."
