"""Redis Streams plumbing shared by the server and ``vlm-monitor worker --redis-url``: key
names, the clip job wire and queue, and the queue status the server reports."""
