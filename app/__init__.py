"""User-facing entry points: the `tunelens` CLI and the Streamlit app. They compose the public API (`import
tunelens`); logic lives in embed/, index/ and caption/."""
