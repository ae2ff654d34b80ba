"""Our server on 127.0.0.1: it answers every request that asks for audio, inside mitmproxy's event
loop or in worker processes of its own (addon/workers.py).

    app.py            the server's life (start, stop, a reload's wind-down), its table of routed
                      requests, and the handler that dispatches each to an answer (ANSWERS)
    worker_main.py    a worker process: the same server on its own loop and port
    job.py            what a routed request carries (Job), the settings it is answered with, the
                      services an answer uses (origin, planner, budgets, plan cache)
    sink.py           what an answer writes to, and the plain error pages it raises
    file_source.py    an MP4 as a file: probe, top level, plan
    plan_cache.py     planned files kept between requests, and init segments' audio track IDs
    file_answer.py    a file answer: validators, conditionals, ranges, and the body's window
    origin_groups.py  the audio of a byte range as origin requests: grouped, fetched, cut
    kept_groups.py    those requests made once per plan and kept with it
    origin_speed.py   the cost model: how far apart two ranges may lie and still be read as one
    origin_answer.py  the origin's answer to the whole file: streamed, a 400, or relayed
    stream_answer.py  a streamed answer: the core fed as the origin's body arrives
    origin_body.py    a streamed origin body read straight from its socket
    manifest_answer.py an HLS playlist or DASH MPD, fetched whole and rewritten
    relay.py          the origin's answer as it is
"""
