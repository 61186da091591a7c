"""A user's own Flower app (fl-launch --app): its folder, its declared requirements, the virtual-mode wrapper.

    requirements.py      Are a Flower app's declared dependencies installed in the Python that will run it?
    user_app.py          A user's own Flower app (``fl-launch --app DIR``), checked before anything starts
    virtual_clientapp.py A user's ClientApp on Flower's simulation runtime (``--app DIR --mode virtual``), logging as
                         in process mode

Imports processes/, flower/, pyenv/ and contract/; never devices/, run/ or cli/.
"""
