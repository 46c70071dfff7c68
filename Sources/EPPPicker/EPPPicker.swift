// EPPPicker module
