"""Trained models put to use: registered, predicted with on photos and videos, exported, browsed."""
