"""Interop tests: Octokit (JavaScript) and PyGithub against the live simulator."""
