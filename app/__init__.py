"""User-facing entry points: the `tunelens` CLI and the Streamlit app. They compose; logic lives in embed/index/caption."""
