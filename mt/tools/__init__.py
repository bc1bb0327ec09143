"""The tools around a trained model: file translation, CTranslate2 export and checkpoint
averaging, and the benchmark harness."""
