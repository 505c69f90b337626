"""Tests for llms/ and prompts/."""
