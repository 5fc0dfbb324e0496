"""Serving: a trained model in front of people. demo (the Gradio app: a tab per task, uploads checked,
`slp transcribe`'s own path) and hub (model card, staging and `slp push`, Spaces). They import inference,
tasks, data and runtime; only the CLI and app.py import them.
"""
