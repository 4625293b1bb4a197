"""This repo's own release plugin: fills in the `pants-oci` distribution's version and long
description from the sources, so each is written in one place."""
