"""A wake-word detector from a typed word (and a few recordings) on a frozen backbone."""
