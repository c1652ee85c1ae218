module deferscope.test/tui

go 1.19
