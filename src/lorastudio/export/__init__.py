"""Storyboard exports."""
