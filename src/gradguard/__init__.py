"""gradguard: gradient-aware adversarial defences and honest evaluation.

    import gradguard as gg
    model = gg.models.build_model("smallcnn", "mnist")
"""

__version__ = "0.1.0"
