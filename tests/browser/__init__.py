"""End-to-end tests in a real headless Chromium (Debian `chromium`, driven by Playwright for Python)."""
