"""Prompt banks (data files) and class text embeddings for zero-shot and text-guided heads."""

from breastclip.prompts.loader import (
    PromptBank,
    PromptBankError,
    bank_from_dict,
    class_text_embeddings,
    list_banks,
    load_bank,
    text_aligned,
)

__all__ = ["PromptBank", "PromptBankError", "bank_from_dict", "class_text_embeddings", "list_banks", "load_bank",
           "text_aligned"]
