"""Server-rendered HTML pages for people: the run page `run_page_url` opens, task output, job and home pages."""
